import FuzzSupport
import Subscribe

/// Target (d): a `/subscribe` query string, and optionally a `Socket-Encoding` header: the bytes
/// after the first newline (none: no header).
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  let text = String(decoding: input, as: UTF8.self)
  let query: Substring
  let encoding: String?
  if let newline = text.firstIndex(of: "\n") {
    query = text[..<newline]
    encoding = String(text[text.index(after: newline)...])
  } else {
    query = text[...]
    encoding = nil
  }
  _ = QueryString.parse(query)
  switch SubscribeOptions.parse(query: query, socketEncoding: encoding) {
  case .success(let options):
    if let cursor = options.cursor, cursor < 0 { _ = cursor }
    _ = options.filter
  case .failure(let rejection):
    guard !rejection.body.isEmpty, !rejection.reason.isEmpty else {
      fuzzFailure("a rejection without body or reason", input)
    }
  }
  return 0
}
