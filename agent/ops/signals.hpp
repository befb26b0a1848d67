// The daemon's signals: SIGTERM and SIGINT ask it to stop, SIGHUP to reload,
// SIGPIPE is ignored. The handlers only set flags; the daemon's main loop
// polls them (mosquitto's src/signals.c does the same).
#pragma once

namespace meter::agent {

void install_signal_handlers();
// Whether SIGTERM or SIGINT arrived (stays true).
bool stop_signalled();
// Whether SIGHUP arrived since the last call.
bool take_reload_signal();

}  // namespace meter::agent
