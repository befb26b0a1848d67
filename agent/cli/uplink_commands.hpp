// The uplink's part of the command line (agent/cli/uplink_commands.cpp).
#pragma once

#include <ostream>
#include <string>

#include "common/buffer/buffer.hpp"
#include "common/config/config.hpp"

namespace meter::agent {

// The uplink section of `status`: text lines, or one JSON object (as_json).
bool append_uplink_status(Buffer& buffer, const Config& config, bool as_json, std::string& out,
                          std::ostream& err);

}  // namespace meter::agent
