// Clock trust: is the gateway clock known to be synchronized? A Raspberry Pi
// has no real-time clock and boots with a stale time until NTP corrects it;
// readings stamped with the gateway clock before then get clock_unsynced.
//
// How it is decided, in order:
//  1. `/run/systemd/timesync/synchronized` exists: systemd-timesyncd creates it
//     once it has synchronized the clock (and it stays until reboot, /run is a
//     tmpfs). Reading a file works inside the hardened unit.
//  2. Otherwise the kernel's view, adjtimex(2) with no changes: TIME_ERROR
//     (STA_UNSYNC) means not synchronized (chrony and ntpd clear it once
//     synchronized). Under systemd's ProtectClock= even this read-only call is
//     refused (EPERM): then the clock is not known to be synchronized.
// An operator who knows better (an RTC, chrony under ProtectClock=) sets
// normalize.clock: synchronized.
#pragma once

#include <string>

namespace meter::agent {

inline constexpr const char* kTimesyncSynchronizedFile = "/run/systemd/timesync/synchronized";

enum class ClockState { synchronized, unsynchronized, unknown };

ClockState probe_clock(const std::string& synchronized_file = kTimesyncSynchronizedFile);

const char* describe(ClockState state);

}  // namespace meter::agent
