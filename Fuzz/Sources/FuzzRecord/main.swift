import Firehose
import FuzzSupport

/// One converter and sink for the whole run, as the translator reuses them.
nonisolated(unsafe) private var converter = RecordConverter()
nonisolated(unsafe) private var sink = ByteSink()

/// Target (c): a DAG-CBOR record block → JSON. Accepted output must be one valid UTF-8 JSON
/// object; a rejected block must leave nothing the caller would use.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  sink.count = 0
  if converter.write(input, to: &sink) {
    guard JSONCheck.isValid(sink.bytes) else {
      fuzzFailure(
        "accepted record is not valid JSON: \(String(decoding: sink.bytes, as: UTF8.self))", input)
    }
    guard sink.bytes.first == UInt8(ascii: "{") else {
      fuzzFailure("accepted record is not a JSON object", input)
    }
  }
  return 0
}
