// libd2lora_spm_shim.so: SentencePiece behind a C function table (see
// spm_shim_api.h). Built without abseil or torch.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "worker/engine/tokenizer/sentencepiece_shim/spm_shim_api.h"

namespace {

using sentencepiece::SentencePieceProcessor;

const SentencePieceProcessor& P(const void* p) { return *static_cast<const SentencePieceProcessor*>(p); }

long CopyOut(const std::string& s, char* out, size_t cap) {
  if (out != nullptr && cap > 0) std::memcpy(out, s.data(), std::min(cap, s.size()));
  return static_cast<long>(s.size());
}

bool Check(const sentencepiece::util::Status& status, char* err, size_t err_cap) {
  if (status.ok()) return true;
  if (err != nullptr && err_cap > 0) {
    const std::string message = status.ToString();
    const size_t n = std::min(err_cap - 1, message.size());
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
  }
  return false;
}

int Train(const char* args, size_t args_len, char* err, size_t err_cap) {
  return Check(sentencepiece::SentencePieceTrainer::Train(std::string(args, args_len)), err, err_cap) ? 0 : 1;
}

void* Load(const char* path, size_t path_len, char* err, size_t err_cap) {
  auto* p = new SentencePieceProcessor();
  if (!Check(p->Load(std::string(path, path_len)), err, err_cap)) {
    delete p;
    return nullptr;
  }
  return p;
}

void Destroy(void* p) { delete static_cast<SentencePieceProcessor*>(p); }

long Encode(const void* p, const char* text, size_t len, int* ids, size_t cap, char* err, size_t err_cap) {
  std::vector<int> out;
  if (!Check(P(p).Encode(std::string_view(text, len), &out), err, err_cap)) return -1;
  std::copy_n(out.begin(), std::min(cap, out.size()), ids);
  return static_cast<long>(out.size());
}

long Decode(const void* p, const int* ids, size_t n, char* out, size_t cap, char* err, size_t err_cap) {
  std::string text;
  if (!Check(P(p).Decode(std::vector<int>(ids, ids + n), &text), err, err_cap)) return -1;
  return CopyOut(text, out, cap);
}

int PieceSize(const void* p) { return P(p).GetPieceSize(); }
int PieceToId(const void* p, const char* piece, size_t len) { return P(p).PieceToId(std::string_view(piece, len)); }
long IdToPiece(const void* p, int id, char* out, size_t cap) { return CopyOut(P(p).IdToPiece(id), out, cap); }

void SpecialIds(const void* p, int ids[4]) {
  ids[0] = P(p).bos_id();
  ids[1] = P(p).eos_id();
  ids[2] = P(p).pad_id();
  ids[3] = P(p).unk_id();
}

int IsControl(const void* p, int id) { return P(p).IsControl(id) ? 1 : 0; }

const D2SpmApi kApi = {kD2SpmApiVersion, Train,     Load,      Destroy,    Encode,   Decode,
                       PieceSize,        PieceToId, IdToPiece, SpecialIds, IsControl};

}  // namespace

extern "C" __attribute__((visibility("default"))) const D2SpmApi* d2lora_spm_shim_api(void) { return &kApi; }
