import Events
import Firehose
import FuzzSupport

/// A stored v1 event → its Jetstream v2 message frame (`V2Frame.message`, PROTOCOL-v2 §2). What
/// it accepts must be JSON, and so must the frame it builds, with the v2 envelope; the
/// `ByteSink` variant must append the same bytes. The first 8 bytes also go to `V2Frame.time` as
/// any Int64. The same input as a Jetstream host's event (`UpstreamEvent.meta`): what it accepts
/// must also make a v2 frame, with a positive `time_us`, a DID, and an NSID on a commit.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  if count >= 8 {
    let timeUS = input.loadUnaligned(as: Int64.self)
    let text = Array(V2Frame.time(timeUS).utf8)
    guard text.count >= 27, text.last == UInt8(ascii: "Z"),
      text[text.count - 8] == UInt8(ascii: ".")
    else { fuzzFailure("time \(timeUS) gave \(String(decoding: text, as: UTF8.self))", input) }
  }
  let timeUS = Int64(count) &* 1_000_003 &- 7
  let frame = V2Frame.message(fromV1: input, eventSeq: Int64(count), timeUS: timeUS)
  if let meta = UpstreamEvent.meta(ofV1: input) {
    guard frame != nil, meta.timeUS > 0, Identifier.isDID(meta.did),
      meta.kind == .commit ? Identifier.isNSID(meta.collection) : meta.collection.isEmpty
    else { fuzzFailure("UpstreamEvent accepted \(meta)", input) }
  }
  var sink = ByteSink(capacity: 16)
  defer { sink.release() }
  sink.append(UInt8(ascii: "x"))
  let written = V2Frame.write(fromV1: input, eventSeq: Int64(count), timeUS: timeUS, to: &sink)
  guard let frame else {
    if written || sink.count != 1 { fuzzFailure("write accepted what message refused", input) }
    return 0
  }
  guard written, Array(sink.bytes.dropFirst()) == frame else {
    fuzzFailure("write and message differ", input)
  }
  guard JSONCheck.isValid(input) else { fuzzFailure("accepted input that is not JSON", input) }
  let valid = frame.withUnsafeBytes { bytes in
    JSONCheck.isValid(bytes)
      && bytes.starts(
        with: #"{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#"#
          .utf8)
  }
  guard valid else {
    fuzzFailure("frame is not valid: \(String(decoding: frame, as: UTF8.self))", input)
  }
  return 0
}
