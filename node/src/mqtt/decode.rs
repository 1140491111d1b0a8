//! Decoding MQTT packets from a byte buffer.
