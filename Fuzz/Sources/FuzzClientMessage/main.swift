import FuzzSupport

@testable import Subscribe

/// Target (e): a subscriber's text message (`options_update`, PROTOCOL §7) and the JSON parser
/// under it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  let bytes = Array(input)
  _ = ClientMessage.decode(bytes)
  let parsed = JSONValue.parse(bytes)
  // Whatever Contrail's parser accepts must be JSON (it may reject more, never accept less).
  if parsed != nil, String(validating: bytes, as: UTF8.self) != nil, !JSONCheck.isValid(input) {
    fuzzFailure("JSONValue.parse accepted text that is not JSON", input)
  }
  return 0
}
