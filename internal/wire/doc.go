// Package wire speaks the PostgreSQL protocol (version 3.0) at the level the proxy needs.
//
//   - framing.go reads and writes whole messages on a byte stream without decoding them
//     (Reader, Writer), the hot path of the relay;
//   - messages.go is the vocabulary: the message type bytes, builders that append the messages
//     the proxy writes itself, and decoders for the few it must read (each returns slices of the
//     message, allocates nothing, and rejects a malformed body).
package wire
