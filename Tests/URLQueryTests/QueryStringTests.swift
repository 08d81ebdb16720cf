import URLQuery
import XCTest

/// Request URIs split at the first `?`, and queries decoded as Go's `url.ParseQuery` decodes them:
/// leniently (malformed pairs dropped) and strictly (Go's error, in Go's words).
final class QueryStringTests: XCTestCase {
  private func strict(_ query: String) -> Result<[String], QueryError> {
    QueryString.parseStrict(Substring(query)).map { $0.map { "\($0.key)=\($0.value)" } }
  }

  private func error(_ query: String) -> String? {
    if case .failure(let error) = strict(query) { return error.description }
    return nil
  }

  func testSplitAtTheFirstQuestionMark() {
    let cases = [
      ("/subscribe?a=1", "/subscribe", "a=1"), ("/subscribe", "/subscribe", ""),
      ("/subscribe?", "/subscribe", ""), ("/a?b?c", "/a", "b?c"), ("", "", ""), ("?x", "", "x"),
    ]
    for (uri, path, query) in cases {
      XCTAssertEqual(QueryString.split(uri).path, Substring(path), uri)
      XCTAssertEqual(QueryString.split(uri).query, Substring(query), uri)
    }
  }

  func testLenientParsingDropsMalformedPairsAndKeepsTheRest() {
    let pairs = QueryString.parse(
      "a=1&b=x%20y&c=p+q&a=2&bad=%zz&semi=1;2&&empty=&novalue&%41=%e2%80%a8")
    XCTAssertEqual(pairs.map(\.key), ["a", "b", "c", "a", "empty", "novalue", "A"])
    XCTAssertEqual(pairs.map(\.value), ["1", "x y", "p q", "2", "", "", "\u{2028}"])
    XCTAssertEqual(QueryString.parse("a=%ff").first?.value, "\u{FFFD}", "not UTF-8")
    XCTAssertEqual(QueryString.parse("=v&k==").map { "\($0.key)|\($0.value)" }, ["|v", "k|="])
  }

  func testStrictParsingDecodesLikeTheLenientOne() {
    XCTAssertEqual(
      try strict("a=1&b=x%20y&c=p+q&a=2&&empty=&novalue&%41=%e2%80%a8&=v").get(),
      ["a=1", "b=x y", "c=p q", "a=2", "empty=", "novalue=", "A=\u{2028}", "=v"])
    XCTAssertEqual(try strict("").get(), [])
    XCTAssertEqual(try strict("&&").get(), [])
  }

  func testStrictParsingReportsTheFirstErrorInGosWords() {
    XCTAssertEqual(error("a=1;b=2"), "invalid semicolon separator in query")
    XCTAssertEqual(error(";"), "invalid semicolon separator in query")
    XCTAssertEqual(error("a=%zz"), #"invalid URL escape "%zz""#)
    XCTAssertEqual(error("%zz=1"), #"invalid URL escape "%zz""#)
    XCTAssertEqual(error("a=%4"), #"invalid URL escape "%4""#)
    XCTAssertEqual(error("a=%"), #"invalid URL escape "%""#)
    XCTAssertEqual(error("a=%z"), #"invalid URL escape "%z""#)
    XCTAssertEqual(error("a=%4zzz"), #"invalid URL escape "%4z""#, "three bytes at most")
    XCTAssertEqual(error("a=1%2x%zz"), #"invalid URL escape "%2x""#, "the first escape")
    // Of the escapes, the first wins, and the key's before its value's; but a `;` anywhere wins
    // over any escape (Go's loop overwrites its error with the semicolon's).
    XCTAssertEqual(error("%kk=%vv"), #"invalid URL escape "%kk""#)
    XCTAssertEqual(error("ok=1&a=%zz&b=%yy"), #"invalid URL escape "%zz""#)
    XCTAssertEqual(error("b;&a=%zz"), "invalid semicolon separator in query")
    XCTAssertEqual(error("a=%zz&b;"), "invalid semicolon separator in query")
  }

  func testStrictParsingRefusesMoreThanTenThousandPairsAsGoDoes() {
    // Go counts `&`s, empty pairs included, before looking at anything else.
    let most = String(repeating: "&", count: QueryString.maxStrictPairs - 1)
    XCTAssertEqual(try strict(most + "a=1").get(), ["a=1"])
    XCTAssertEqual(error(most + "&a=1"), "number of URL query parameters exceeded limit")
    XCTAssertEqual(error(most + "&a=%zz;"), "number of URL query parameters exceeded limit")
    XCTAssertEqual(QueryString.parse(Substring(most + "&a=1")).count, 1, "the lenient parse")
  }

  func testEscapeErrorsQuoteTheirBytesAsGoDoes() {
    // strconv.Quote: `"` and `\` escaped, control bytes named or `\x`, printable UTF-8 as it is,
    // unprintable characters `\u`, a cut or invalid sequence byte by byte.
    XCTAssertEqual(error("a=%\"x"), #"invalid URL escape "%\"x""#)
    XCTAssertEqual(error("a=%\\"), #"invalid URL escape "%\\""#)
    XCTAssertEqual(error("a=%\n\u{7}"), #"invalid URL escape "%\n\a""#)
    XCTAssertEqual(error("a=%\u{1}\u{7F}"), #"invalid URL escape "%\x01\x7f""#)
    XCTAssertEqual(error("a=%é"), #"invalid URL escape "%é""#)
    XCTAssertEqual(error("a=%\u{A0}"), #"invalid URL escape "%\u00a0""#)
    XCTAssertEqual(error("a=%\u{AD}"), #"invalid URL escape "%\u00ad""#)
    XCTAssertEqual(error("a=%a€"), #"invalid URL escape "%a\xe2""#)
    XCTAssertEqual(error("a=%€"), #"invalid URL escape "%\xe2\x82""#)
  }

  func testTheLenientParseIsTheStrictOneWithoutItsErrors() {
    // Every query of up to five characters from these.
    var queries = [""]
    var longest = [""]
    for _ in 0..<5 {
      longest = longest.flatMap { query in "a=&;%+fé".map { query + String($0) } }
      queries += longest
    }
    for query in queries {
      let lenient = QueryString.parse(Substring(query)).map { "\($0.key)=\($0.value)" }
      switch strict(query) {
      case .success(let pairs): XCTAssertEqual(pairs, lenient, query)
      case .failure:
        let pieces = query.split(separator: "&").count
        XCTAssertLessThan(lenient.count, pieces, "a pair was dropped: \(query)")
      }
    }
  }
}
