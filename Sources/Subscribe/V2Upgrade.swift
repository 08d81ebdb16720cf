import NIOHTTP1

/// The v2 wire's side of the upgrade (PROTOCOL §12.1): the 101 response's headers and
/// the subscription a validated request asks for.
enum V2Upgrade {
  /// The one subprotocol, echoed only when offered exactly (case-sensitive) in a
  /// comma-separated `Sec-WebSocket-Protocol`. No extension is ever accepted: NIO's upgrader
  /// never negotiates permessage-deflate, so the response has no `Sec-WebSocket-Extensions`.
  static let subprotocol = "xrpc.v1.json"

  static func responseHeaders(_ request: HTTPHeaders) -> HTTPHeaders {
    var headers = HTTPHeaders()
    let offered = request["Sec-WebSocket-Protocol"].flatMap { $0.split(separator: ",") }
    if offered.contains(where: { $0.trimmingSpaces == subprotocol }) {
      headers.add(name: "Sec-WebSocket-Protocol", value: subprotocol)
    }
    return headers
  }
}

extension SubscribeOptions {
  /// What the subscriber machinery runs for a v2 request: its filter and size cap, zstd when
  /// it named the dictionary, no hello and no heartbeats (the v2 wire has neither). The cursor
  /// is kept only to label the start; `V2Cursor` resolves it.
  init(v2 request: V2Options) {
    self.init(
      filter: request.filter, cursor: request.cursor, compress: request.zstdDictionary != nil,
      requireHello: false, maxMessageSizeBytes: request.maxMessageSizeBytes, heartbeat: nil)
  }
}

extension Substring {
  fileprivate var trimmingSpaces: Substring {
    var text = self
    while text.first == " " || text.first == "\t" { text = text.dropFirst() }
    while text.last == " " || text.last == "\t" { text = text.dropLast() }
    return text
  }
}
