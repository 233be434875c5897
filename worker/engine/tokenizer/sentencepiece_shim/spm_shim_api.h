// The interface of libd2lora_spm_shim.so, the only code that links SentencePiece.
//
// Why a shim: Debian's libsentencepiece.so bundles (and exports) its own
// protobuf-lite, while Debian's LibTorch loads the system libprotobuf.so; a
// process that links both crashes in libprotobuf's static initialisers (see
// google/sentencepiece#723). The engine therefore never links SentencePiece:
// it loads this shim with dlmopen() into a link namespace of its own, where
// SentencePiece, its protobuf copy and its own C/C++ runtime live apart from
// the rest of the process (RTLD_DEEPBIND is not enough: it breaks std::cerr,
// which executables copy-relocate).
//
// Because the namespaces have separate heaps, only C types cross the
// boundary and all memory is the caller's: outputs go to caller buffers, and
// a function that needs more room says how much.
#pragma once

#include <stddef.h>

extern "C" {

struct D2SpmApi {
  int version;  // kD2SpmApiVersion
  // 0 on success; otherwise a message (truncated to err_cap) in err.
  int (*train)(const char* args, size_t args_len, char* err, size_t err_cap);
  // A processor, or NULL with a message in err.
  void* (*load)(const char* path, size_t path_len, char* err, size_t err_cap);
  void (*destroy)(void* processor);
  // The number of ids (of which the first min(result, cap) are written), or
  // -1 with a message in err.
  long (*encode)(const void* processor, const char* text, size_t len, int* ids, size_t cap,
                 char* err, size_t err_cap);
  // The text's length (of which min(result, cap) bytes are written), or -1.
  long (*decode)(const void* processor, const int* ids, size_t n, char* out, size_t cap,
                 char* err, size_t err_cap);
  int (*piece_size)(const void* processor);
  int (*piece_to_id)(const void* processor, const char* piece, size_t len);
  // The piece's length (min(result, cap) bytes written).
  long (*id_to_piece)(const void* processor, int id, char* out, size_t cap);
  // bos, eos, pad, unk (-1 when the model has none).
  void (*special_ids)(const void* processor, int ids[4]);
  int (*is_control)(const void* processor, int id);
};

// The shim's one exported symbol.
const D2SpmApi* d2lora_spm_shim_api(void);

}  // extern "C"

inline constexpr int kD2SpmApiVersion = 2;
