// GPT-2's byte-to-unicode table: every byte is shown as one printable unicode
// character, so that byte-level BPE vocabularies are plain strings ("Ġ" is the
// space byte, "Ċ" the newline byte).
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace d2lora::engine {

// The UTF-8 spelling of the character that stands for `byte`.
const std::string& ByteToUnicode(unsigned char byte);

// `bytes` with every byte replaced by its character.
std::string BytesToUnicodeString(absl::string_view bytes);

// The inverse of BytesToUnicodeString, or nullopt when `text` holds a
// character outside the table.
std::optional<std::string> UnicodeStringToBytes(absl::string_view text);

// Appends the UTF-8 encoding of `code_point`.
void AppendUtf8(char32_t code_point, std::string* out);

// Length in bytes of the UTF-8 character that starts with `lead` (1 for an
// invalid lead byte).
int Utf8CharLength(unsigned char lead);

// Length of the longest prefix of `text` that is valid UTF-8 (no overlong
// forms, no surrogates, nothing past U+10FFFF).
size_t ValidUtf8Length(absl::string_view text);

}  // namespace d2lora::engine
