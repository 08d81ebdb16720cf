import Compression
import Events
import Firehose
import NIOHTTP1
import Synchronization
import URLQuery

/// `GET /xrpc/network.bsky.jetstream.getZstdDictionary[?id=N]` (PROTOCOL-v2 §5): the raw bytes of
/// the dictionary v2 frames are compressed with, cacheable forever under its ID. Not gated on
/// readiness.
public struct DictionaryEndpoint: Sendable {
  public static let path = "/xrpc/network.bsky.jetstream.getZstdDictionary"

  public let dictionary: ZstdDictionary
  /// `Last-Modified`, in unix seconds: when the server started serving the dictionary.
  public let lastModified: Int64

  public init(
    dictionary: ZstdDictionary,
    lastModified: Int64 = Sequencer.wallClockMicroseconds() / 1_000_000
  ) {
    self.dictionary = dictionary
    self.lastModified = lastModified
  }

  /// `"zstd-dict-<id>"`, quotes included.
  public var etag: String { "\"zstd-dict-\(dictionary.id)\"" }

  /// An answer: status, headers and body (`Content-Length` and CORS are the server's).
  public struct Response: Sendable, Equatable {
    public var status: HTTPResponseStatus
    public var headers: HTTPHeaders
    public var body: [UInt8]
  }

  /// The answer to one request. GET and HEAD get the same answer (the server leaves out a HEAD's
  /// body); every other method gets `405 MethodNotAllowed` (the server answers OPTIONS
  /// preflights before asking). `If-None-Match` (or, without it, `If-Modified-Since`) makes a
  /// 200 a 304; a single `Range` (honoured unless `If-Range` names another version) makes it a
  /// 206, or a 416 when it lies past the end. Several ranges or a malformed one are ignored.
  public func respond(method: HTTPMethod, query: Substring, headers: HTTPHeaders) -> Response {
    guard method == .GET || method == .HEAD else {
      var response = Self.error(
        XRPCError(
          .methodNotAllowed, error: "MethodNotAllowed", message: "expected GET",
          reason: "method"))
      response.headers.add(name: "Allow", value: "GET, HEAD, OPTIONS")
      return response
    }
    if let value = QueryString.parse(query).first(where: { $0.key == "id" })?.value {
      guard let id = SubscribeOptions.parseInt64(value) else {
        return Self.error(
          XRPCError(
            .badRequest, error: "InvalidRequest",
            message: "id must be an integer zstd dictionary ID", reason: "invalid_id"))
      }
      guard id == Int64(dictionary.id) else {
        return Self.error(
          XRPCError(
            .notFound, error: "DictionaryNotFound",
            message: "no dictionary with id \(id); current dictionary id is \(dictionary.id)",
            reason: "not_found"))
      }
    }
    var common = HTTPHeaders()
    common.add(name: "ETag", value: etag)
    common.add(name: "Cache-Control", value: "public, max-age=31536000, immutable")
    common.add(name: "X-Zstd-Dictionary-Id", value: String(dictionary.id))
    if isNotModified(headers) {
      // Go's `writeNotModified`: no body headers, and no Last-Modified beside an ETag.
      return Response(status: .notModified, headers: common, body: [])
    }
    common.add(name: "Last-Modified", value: HTTPDate.format(lastModified))
    common.add(name: "Accept-Ranges", value: "bytes")
    let size = dictionary.bytes.count
    switch range(headers, size: size) {
    case .whole:
      common.add(name: "Content-Type", value: "application/octet-stream")
      return Response(status: .ok, headers: common, body: dictionary.bytes)
    case .part(let part):
      common.add(name: "Content-Type", value: "application/octet-stream")
      common.add(
        name: "Content-Range", value: "bytes \(part.lowerBound)-\(part.upperBound - 1)/\(size)")
      return Response(
        status: .partialContent, headers: common, body: Array(dictionary.bytes[part]))
    case .unsatisfiable:
      common.add(name: "Content-Type", value: "text/plain; charset=utf-8")
      common.add(name: "Content-Range", value: "bytes */\(size)")
      return Response(
        status: .rangeNotSatisfiable, headers: common,
        body: Array("invalid range: failed to overlap".utf8))
    }
  }

  private static func error(_ error: XRPCError) -> Response {
    var headers = HTTPHeaders()
    headers.add(name: "Content-Type", value: XRPCError.contentType)
    return Response(status: error.status, headers: headers, body: error.body)
  }

  /// `If-None-Match` lists this ETag (weakly compared) or `*`; or, without it,
  /// `If-Modified-Since` is not before `lastModified`.
  private func isNotModified(_ headers: HTTPHeaders) -> Bool {
    let tags = headers["If-None-Match"]
    if !tags.isEmpty {
      return tags.contains { value in
        value.split(separator: ",").contains { tag in
          let tag = tag.trimmingSpaces
          return tag == "*" || (tag.hasPrefix("W/") ? tag.dropFirst(2) : tag) == etag
        }
      }
    }
    guard let since = headers.first(name: "If-Modified-Since").flatMap(HTTPDate.parse) else {
      return false
    }
    return lastModified <= since
  }

  private enum Range {
    case whole
    case part(Swift.Range<Int>)
    case unsatisfiable
  }

  /// A single `bytes=` range (`a-b`, `a-`, `-n`) of a body of `size` bytes.
  private func range(_ headers: HTTPHeaders, size: Int) -> Range {
    guard let value = headers.first(name: "Range"), value.hasPrefix("bytes=") else { return .whole }
    if let ifRange = headers.first(name: "If-Range")?.trimmingSpaces,
      ifRange != etag && ifRange != HTTPDate.format(lastModified)
    {
      return .whole
    }
    let spec = value.dropFirst("bytes=".count).trimmingSpaces
    guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .whole }
    let first = spec[..<dash].trimmingSpaces
    let last = spec[spec.index(after: dash)...].trimmingSpaces
    func number(_ text: Substring) -> Int? {
      guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
      return Int(text)  // nil on overflow: the range is ignored
    }
    if first.isEmpty {
      guard let count = number(last) else { return .whole }
      guard count > 0, size > 0 else { return .unsatisfiable }
      return .part(max(0, size - count)..<size)
    }
    guard let start = number(first) else { return .whole }
    guard start < size else { return .unsatisfiable }
    if last.isEmpty { return .part(start..<size) }
    guard let end = number(last), end >= start else { return .whole }
    return .part(start..<min(end, size - 1) + 1)
  }
}

extension DictionaryEndpoint {
  private static let shared = Mutex<[UInt32: DictionaryEndpoint]>([:])

  /// One endpoint per dictionary for the whole process, so `Last-Modified` stays the time the
  /// dictionary was first served, whichever connection asks.
  static func shared(for dictionary: ZstdDictionary) -> DictionaryEndpoint {
    shared.withLock { endpoints in
      if let endpoint = endpoints[dictionary.id], endpoint.dictionary == dictionary {
        return endpoint
      }
      let endpoint = DictionaryEndpoint(dictionary: dictionary)
      endpoints[dictionary.id] = endpoint
      return endpoint
    }
  }
}

extension StringProtocol {
  /// Without leading and trailing spaces and tabs.
  fileprivate var trimmingSpaces: SubSequence {
    let isSpace = { (c: Character) in c == " " || c == "\t" }
    guard let start = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
    let end = lastIndex(where: { !isSpace($0) })!
    return self[start...end]
  }
}

/// HTTP dates in the IMF-fixdate form (RFC 9110 §5.6.7): `Sun, 06 Nov 1994 08:49:37 GMT`.
enum HTTPDate {
  private static let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
  private static let months = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
  ]

  /// `seconds` since the epoch (UTC) as an IMF-fixdate.
  static func format(_ seconds: Int64) -> String {
    let (day, secondOfDay) = floorDivide(seconds, 86_400)
    let (year, month, dayOfMonth) = CivilDate.fromDays(day)
    let weekday = Int(((day % 7) + 11) % 7)  // 1970-01-01 was a Thursday
    func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
    let yearText = String(year)
    return "\(weekdays[weekday]), \(two(dayOfMonth)) \(months[Int(month) - 1]) "
      + String(repeating: "0", count: max(0, 4 - yearText.count)) + yearText
      + " \(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60)) GMT"
  }

  /// An IMF-fixdate as seconds since the epoch; nil for anything else (the obsolete RFC 850 and
  /// asctime forms included).
  static func parse(_ text: String) -> Int64? {
    let bytes = Array(text.utf8)
    guard bytes.count == 29 else { return nil }
    func string(_ range: Swift.Range<Int>) -> String {
      String(decoding: bytes[range], as: UTF8.self)
    }
    func number(_ range: Swift.Range<Int>) -> Int64? {
      guard bytes[range].allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
      return Int64(string(range))
    }
    guard weekdays.contains(string(0..<3)), string(3..<5) == ", ", bytes[7] == 0x20,
      bytes[11] == 0x20, bytes[16] == 0x20, bytes[19] == 0x3A, bytes[22] == 0x3A,
      string(25..<29) == " GMT",
      let day = number(5..<7), let monthIndex = months.firstIndex(of: string(8..<11)),
      let year = number(12..<16), let hour = number(17..<19), let minute = number(20..<22),
      let second = number(23..<25), (1...31).contains(day), hour < 24, minute < 60, second < 61
    else { return nil }
    let daysSinceEpoch = CivilDate.days(year: year, month: Int64(monthIndex) + 1, day: day)
    return daysSinceEpoch * 86_400 + hour * 3600 + minute * 60 + second
  }

  private static func floorDivide(_ a: Int64, _ b: Int64) -> (Int64, Int64) {
    let q = a / b
    let r = a % b
    return r < 0 ? (q - 1, r + b) : (q, r)
  }
}
