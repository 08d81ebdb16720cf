import FuzzSupport
import Subscribe
import URLQuery

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
  // Within Go's limit on pairs, the strict parse fails exactly when the lenient one drops a pair,
  // and agrees with it otherwise.
  let lenient = QueryString.parse(query)
  switch QueryString.parseStrict(query) {
  case .success(let pairs):
    guard pairs.elementsEqual(lenient, by: { $0 == $1 }) else {
      fuzzFailure("the strict and the lenient parse disagree", input)
    }
  case .failure(.tooManyPairs): break
  case .failure(let error):
    guard lenient.count < query.split(separator: "&").count, !error.description.isEmpty else {
      fuzzFailure("a strict error where the lenient parse dropped nothing", input)
    }
  }
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
