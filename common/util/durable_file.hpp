// Small state files that must survive a power cut once written: the text is
// written to `<path>.tmp`, synced, renamed over `path`, and the directory is
// synced, so a crash leaves the old file or the new one, never a torn one.
#pragma once

#include <string>
#include <string_view>

#include "common/util/result.hpp"

namespace meter {

Status replace_file_durably(const std::string& path, std::string_view text);
// Removes `path` (absent is fine) and syncs its directory.
Status remove_file_durably(const std::string& path);

}  // namespace meter
