import FuzzSupport
import NIOCore
import NIOEmbedded

@testable import Ingest

/// Target: the relay connection's websocket framing (`RelayMessageDecoder`, Ingest, internal:
/// `@testable import`), as a hostile or broken relay could send it, split at arbitrary points.
///
/// Input: bytes 0–1 (little-endian) modulo 4097 are the message limit (0…4096); bytes 2–5 are
/// the chunk sizes, used in turn (a byte b below 128 gives 1 + b bytes, above 64 × (b − 127): a
/// write costs tens of microseconds in this debug build, so a long input in 1-byte chunks would
/// run into the timeout); the rest is the byte stream from the relay.
///
/// Checks: a binary message is within the limit and a ping within 125 bytes; an oversize count
/// is over the limit; the payload bytes handed out plus the oversize counts never exceed the
/// bytes fed so far (each input byte is handed out or counted at most once); and feeding the
/// stream in one piece gives the same messages, and the same error or none, as feeding it in the
/// chosen chunks. A `ProtocolError` is a valid outcome: decoding stops there.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  guard input.count >= 6 else { return 0 }
  let limit = (Int(input[0]) | Int(input[1]) << 8) % 4097
  let chunks = input[2..<6].map { $0 < 128 ? Int($0) + 1 : 64 * (Int($0) - 127) }
  let stream = UnsafeRawBufferPointer(rebasing: input[6...])
  let chunked = decode(stream, limit: limit, chunks: chunks, input: input)
  let whole = decode(stream, limit: limit, chunks: [max(stream.count, 1)], input: input)
  guard chunked == whole else {
    fuzzFailure(
      "chunked: \(chunked.messages.count) messages, error \(chunked.failed); "
        + "whole: \(whole.messages.count) messages, error \(whole.failed)", input)
  }
  return 0
}

/// A `RelayMessage`, comparable (`ByteBuffer` compares its readable bytes).
private enum Message: Equatable {
  case binary(ByteBuffer)
  case ping(ByteBuffer)
  case close
  case oversize(UInt64)
  case text
  case other
}

private struct Outcome: Equatable {
  var messages: [Message] = []
  /// Whether the decoder threw (it stops at the first error).
  var failed = false
}

/// Feeds `stream` in pieces of `chunks` sizes (in turn) to a fresh decoder, checking every
/// message as it comes out.
private func decode(
  _ stream: UnsafeRawBufferPointer, limit: Int, chunks: [Int], input: UnsafeRawBufferPointer
) -> Outcome {
  let channel = EmbeddedChannel(
    handler: ByteToMessageHandler(RelayMessageDecoder(maxMessageBytes: limit)))
  var outcome = Outcome()
  var fed = 0
  var accounted: UInt64 = 0
  var next = 0

  func drain() {
    while true {
      let message: RelayMessage?
      do {
        message = try channel.readInbound(as: RelayMessage.self)
      } catch {
        fuzzFailure("readInbound: \(error)", input)
      }
      guard let message else { return }
      switch message {
      case .binary(let payload):
        guard payload.readableBytes <= limit else {
          fuzzFailure("a binary message of \(payload.readableBytes) bytes, limit \(limit)", input)
        }
        accounted += UInt64(payload.readableBytes)
        outcome.messages.append(.binary(payload))
      case .ping(let payload):
        guard payload.readableBytes <= 125 else {
          fuzzFailure("a ping of \(payload.readableBytes) bytes", input)
        }
        accounted += UInt64(payload.readableBytes)
        outcome.messages.append(.ping(payload))
      case .close: outcome.messages.append(.close)
      case .oversize(let bytes):
        guard bytes > UInt64(limit) else {
          fuzzFailure("an oversize message of \(bytes) bytes, limit \(limit)", input)
        }
        accounted += bytes
        outcome.messages.append(.oversize(bytes))
      case .text: outcome.messages.append(.text)
      case .other: outcome.messages.append(.other)
      }
      guard accounted <= UInt64(fed) else {
        fuzzFailure("\(accounted) payload bytes handed out or counted of \(fed) fed", input)
      }
    }
  }

  while fed < stream.count {
    let end = min(fed + chunks[next % chunks.count], stream.count)
    next += 1
    let piece = ByteBuffer(bytes: UnsafeRawBufferPointer(rebasing: stream[fed..<end]))
    fed = end
    do {
      try channel.writeInbound(piece)
    } catch is RelayMessageDecoder.ProtocolError {
      outcome.failed = true
    } catch {
      fuzzFailure("writeInbound threw \(error), not a ProtocolError", input)
    }
    drain()  // the messages before an error are delivered too
    if outcome.failed { break }
  }
  // Closing runs `decodeLast`; anything it delivers is checked and compared too.
  _ = try? channel.finish()
  drain()
  return outcome
}
