#if canImport(Glibc)
  import Glibc
#endif

/// Bare HTTP/1.1 over a TCP socket on 127.0.0.1, for what ordinary clients refuse to do: request
/// targets over 1 MiB, or a websocket that never reads.
public enum RawHTTP {
  public struct Failure: Error {}

  /// The headers of a websocket handshake request.
  private static let upgradeHeaders =
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

  /// One GET; returns the status code and body. With `upgrade`, the request is a websocket
  /// handshake that the server is expected to refuse (an accepted one would never end).
  public static func get(port: Int, target: String, upgrade: Bool = false) throws -> (
    status: Int, body: String
  ) {
    let fd = try connected(port: port)
    defer { close(fd) }
    let headers = upgrade ? upgradeHeaders : "Connection: close\r\n"
    try sendAll(fd, Array("GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\n\(headers)\r\n".utf8))
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while true {
      let n = recv(fd, &chunk, chunk.count, 0)
      if n <= 0 { break }
      response += chunk[..<n]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let statusLine = text.split(separator: "\r\n").first,
      statusLine.split(separator: " ").count >= 2,
      let status = Int(statusLine.split(separator: " ")[1])
    else { throw Failure() }
    let body = text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
    return (status, body)
  }

  private static func connected(port: Int) throws -> Int32 {
    do { return try RawSocket.connect(port: port) } catch { throw Failure() }
  }

  private static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var sent = 0
    while sent < bytes.count {
      let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
      guard n > 0 else { throw Failure() }
      sent += n
    }
  }
}
