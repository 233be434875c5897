#include "worker/engine/tokenizer/normalizer.h"

#include <utf8proc.h>

#include <cstdlib>
#include <utility>

#include "worker/engine/tokenizer/byte_level.h"

namespace d2lora::engine {
namespace {

utf8proc_option_t OptionsOf(UnicodeForm form) {
  switch (form) {
    case UnicodeForm::kNFC:
      return static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    case UnicodeForm::kNFKC:
      return static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case UnicodeForm::kNFD:
      return static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    case UnicodeForm::kNFKD:
      return static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  }
  return UTF8PROC_STABLE;
}

bool IsAscii(absl::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

// Appends `run` (valid UTF-8) in `form`.
void AppendNormalized(absl::string_view run, UnicodeForm form, std::string* out) {
  if (IsAscii(run)) {  // every form leaves ASCII as it is
    out->append(run.data(), run.size());
    return;
  }
  utf8proc_uint8_t* mapped = nullptr;
  const utf8proc_ssize_t n =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                   static_cast<utf8proc_ssize_t>(run.size()), &mapped, OptionsOf(form));
  if (n < 0) {  // out of memory only: the run was checked to be valid
    out->append(run.data(), run.size());
    return;
  }
  out->append(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
  std::free(mapped);
}

}  // namespace

bool ParseUnicodeForm(absl::string_view name, UnicodeForm* form) {
  static constexpr std::pair<absl::string_view, UnicodeForm> kForms[] = {
      {"NFC", UnicodeForm::kNFC}, {"NFKC", UnicodeForm::kNFKC},
      {"NFD", UnicodeForm::kNFD}, {"NFKD", UnicodeForm::kNFKD}};
  for (const auto& [known, value] : kForms) {
    if (name == known) {
      *form = value;
      return true;
    }
  }
  return false;
}

std::string NormalizeUnicode(absl::string_view text, UnicodeForm form) {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t valid = ValidUtf8Length(text.substr(pos));
    AppendNormalized(text.substr(pos, valid), form, &out);
    pos += valid;
    if (pos < text.size()) out.push_back(text[pos++]);  // an invalid byte passes through
  }
  return out;
}

std::string Normalizer::Apply(absl::string_view text) const {
  std::string out(text);
  for (UnicodeForm form : forms_) out = NormalizeUnicode(out, form);
  return out;
}

}  // namespace d2lora::engine
