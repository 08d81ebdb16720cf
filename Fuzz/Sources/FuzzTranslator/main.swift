import Events
import FuzzSupport

/// One translator for the whole run, as in the ingest pipeline (its scratch buffers are reused).
nonisolated(unsafe) private let translator = Translator()
nonisolated(unsafe) private var events: [Event] = []

/// Target (a): one relay frame (DAG-CBOR header + body) → Jetstream events. Every event's JSON
/// must be a valid UTF-8 JSON object.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  events.removeAll(keepingCapacity: true)
  translator.translate(input, into: &events)
  for event in events {
    let valid = event.json.withUnsafeBytes { json in
      JSONCheck.isValid(json) && json.first == UInt8(ascii: "{")
    }
    guard valid else {
      fuzzFailure("event JSON is not valid: \(String(decoding: event.json, as: UTF8.self))", input)
    }
  }
  return 0
}
