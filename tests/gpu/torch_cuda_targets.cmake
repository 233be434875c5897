# CUDA LibTorch without a CUDA toolkit: tests/gpu/run.sh passes this file as
# CMAKE_PROJECT_INCLUDE (so it runs right after project(), before
# find_package(Torch)) when the machine has pip's torch and its nvidia-* runtime
# packages but no nvcc.
#
# LibTorch's Caffe2Config.cmake includes public/cuda.cmake, which needs a full
# toolkit (FindCUDA: nvcc, cuda.h, cudart; newer releases also
# enable_language(CUDA)) only to define imported targets such as torch::cudart,
# which LibTorch's own targets (c10_cuda, torch_cuda) then link to. cuda.cmake
# returns at once when torch::cudart already exists. This file defines it and
# the other targets those exports may name, from site-packages/nvidia: the CUDA
# runtime library and every package's headers. Nothing in this project is
# compiled by nvcc; the libraries LibTorch itself needs (cuBLAS, cuDNN, NCCL...)
# are found at link and run time through libtorch_cuda.so's own RUNPATH.
#
# The list of names covers torch 2.0-2.9's cuda.cmake; a LibTorch whose exports
# name another one fails at generate time with "links to target X but the
# target was not found": add X below.

set(D2LORA_PIP_NVIDIA_DIR "" CACHE PATH "site-packages/nvidia of pip's CUDA runtime packages")
# nvidia/<package>/{include,lib}, or (CUDA 13 wheels) nvidia/cu13/{include,lib}.
file(GLOB _d2lora_cudart "${D2LORA_PIP_NVIDIA_DIR}/*/lib/libcudart.so*")
file(GLOB _d2lora_cudart_h "${D2LORA_PIP_NVIDIA_DIR}/*/include/cuda_runtime_api.h")
file(GLOB _d2lora_includes LIST_DIRECTORIES true "${D2LORA_PIP_NVIDIA_DIR}/*/include")
if(NOT _d2lora_cudart OR NOT _d2lora_cudart_h)
  message(FATAL_ERROR "torch_cuda_targets.cmake: no libcudart.so* and cuda_runtime_api.h under "
                      "${D2LORA_PIP_NVIDIA_DIR}/*/ (pip's nvidia-cuda-runtime); install the CUDA toolkit instead")
endif()
list(SORT _d2lora_cudart)
list(GET _d2lora_cudart 0 _d2lora_cudart)  # libcudart.so.12 (or .so.13)
message(STATUS "d2lora: CUDA without a toolkit: cudart ${_d2lora_cudart}, "
               "headers from ${D2LORA_PIP_NVIDIA_DIR}/*/include")

add_library(torch::cudart INTERFACE IMPORTED GLOBAL)
set_target_properties(torch::cudart PROPERTIES
  INTERFACE_LINK_LIBRARIES "${_d2lora_cudart}"
  INTERFACE_INCLUDE_DIRECTORIES "${_d2lora_includes}")

# The driver library, for the targets that link it (the driver installs it).
find_library(D2LORA_CUDA_DRIVER_LIBRARY NAMES cuda libcuda.so.1)
foreach(_t caffe2::cuda CUDA::cuda_driver)
  add_library(${_t} INTERFACE IMPORTED GLOBAL)
  if(D2LORA_CUDA_DRIVER_LIBRARY)
    set_target_properties(${_t} PROPERTIES INTERFACE_LINK_LIBRARIES "${D2LORA_CUDA_DRIVER_LIBRARY}")
  endif()
endforeach()

# Names whose libraries libtorch_cuda.so already links itself: empty here.
foreach(_t caffe2::nvrtc caffe2::cublas caffe2::curand caffe2::cufft caffe2::cudnn caffe2::tensorrt
           torch::cudnn torch::cusparselt torch::cufile torch::cudss torch::nvtoolsext torch::nvtx3
           CUDA::cudart CUDA::nvrtc CUDA::cublas CUDA::cublasLt CUDA::curand CUDA::cufft CUDA::cusparse
           CUDA::cusolver CUDA::nvToolsExt CUDA::nvtx3 CUDA::cupti CUDA::cuFile CUDA::nvJitLink)
  if(NOT TARGET ${_t})
    add_library(${_t} INTERFACE IMPORTED GLOBAL)
  endif()
endforeach()
