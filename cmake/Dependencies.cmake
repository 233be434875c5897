# Every dependency comes from Debian's packages (see tests/run.sh), or, for the
# engine-only build on a GPU machine, from the LibTorch found by CMAKE_PREFIX_PATH.
find_package(Torch REQUIRED)
set(THREADS_PREFER_PTHREAD_FLAG ON)
find_package(Threads REQUIRED)
find_package(absl REQUIRED)
find_package(nlohmann_json 3.9 REQUIRED)
find_package(OpenSSL REQUIRED)  # libcrypto: SHA-256 of checkpoints and artifacts
find_package(PkgConfig REQUIRED)
pkg_check_modules(RE2 REQUIRED IMPORTED_TARGET re2)
pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)
# tokenizer.json: Split patterns run with Oniguruma (as Hugging Face tokenizers
# runs them), Unicode normalizers with utf8proc.
pkg_check_modules(ONIGURUMA REQUIRED IMPORTED_TARGET oniguruma)
pkg_check_modules(UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
# `d2lora plot` draws its PNGs with Cairo (Debian: libcairo2-dev; tests/run.sh
# and the quickstart install it). Without it the CLI is built without `plot`.
pkg_check_modules(CAIRO IMPORTED_TARGET cairo)
find_package(CLI11 CONFIG REQUIRED)
find_package(yaml-cpp REQUIRED)
if(D2LORA_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
endif()
if(D2LORA_BENCH)
  find_package(benchmark QUIET)
endif()

# LibTorch's own flags (e.g. -D_GLIBCXX_USE_CXX11_ABI) travel with torch_library.
add_library(d2lora_torch INTERFACE)
target_link_libraries(d2lora_torch INTERFACE ${TORCH_LIBRARIES} Threads::Threads)
target_include_directories(d2lora_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_compile_options(d2lora_torch INTERFACE ${TORCH_CXX_FLAGS})
# Every target that includes LibTorch compiles with -pthread, so the one
# precompiled header (which must see the same macros) serves them all.
target_compile_options(d2lora_torch INTERFACE -pthread)
target_link_options(d2lora_torch INTERFACE -pthread)
if(CCACHE_PROGRAM AND D2LORA_PCH AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  target_compile_options(d2lora_torch INTERFACE -fpch-preprocess)  # lets ccache cache PCH users
endif()

# The service (coordinator, worker daemon, remote CLI): gRPC, Protobuf,
# prometheus-cpp and SQLite, all from Debian's packages.
if(D2LORA_SERVICE)
  find_package(Protobuf REQUIRED)
  find_package(gRPC CONFIG REQUIRED)
  find_package(prometheus-cpp CONFIG REQUIRED)
  find_package(SQLite3 REQUIRED)
  find_program(D2LORA_PROTOC protoc REQUIRED)
  find_program(D2LORA_GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)
endif()
