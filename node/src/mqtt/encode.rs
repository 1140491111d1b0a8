//! Encoding MQTT packets into a byte buffer.
