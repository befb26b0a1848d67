// Where the MQTT source hands each message. `commit` returns only once the
// message is committed: returning from the message callback is what sends the
// PUBACK (Paho C++ has no manual-acknowledge API), so a sink that cannot
// commit keeps retrying rather than return.
#pragma once

#include "common/model/raw_message.hpp"

namespace meter::agent {

class MessageSink {
 public:
  virtual ~MessageSink() = default;
  virtual void commit(const RawMessage& message) = 0;
};

}  // namespace meter::agent
