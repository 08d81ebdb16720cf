import Foundation
import Synchronization

#if canImport(Glibc)
  import Glibc
#endif

/// Plain TCP sockets on 127.0.0.1 for hostile-client tests: many connections, byte-at-a-time
/// requests, websockets that never read with a small receive buffer, and waiting for EOF.
public enum RawSocket {
  public struct Failure: Error, CustomStringConvertible {
    public let what: String
    public var description: String { "raw socket: \(what) (errno \(errno))" }
  }

  /// A socket connected to 127.0.0.1:`port`; `receiveBuffer` sets SO_RCVBUF before connecting
  /// (the kernel doubles it and applies a floor); `source` binds another loopback address
  /// (127.0.0.2, …) first, so one machine can play several clients.
  public static func connect(port: Int, receiveBuffer: Int32? = nil, source: String? = nil) throws
    -> Int32
  {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw Failure(what: "socket") }
    if var size = receiveBuffer {
      setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
    }
    func call(_ address: String, _ port: Int, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32)
      -> Int32
    {
      var socketAddress = sockaddr_in()
      socketAddress.sin_family = sa_family_t(AF_INET)
      socketAddress.sin_port = in_port_t(UInt16(port).bigEndian)
      socketAddress.sin_addr.s_addr = inet_addr(address)
      return withUnsafePointer(to: &socketAddress) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          body($0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
      }
    }
    if let source, call(source, 0, { Glibc.bind(fd, $0, $1) }) != 0 {
      close(fd)
      throw Failure(what: "bind \(source)")
    }
    guard call("127.0.0.1", port, { Glibc.connect(fd, $0, $1) }) == 0 else {
      close(fd)
      throw Failure(what: "connect")
    }
    return fd
  }

  /// A loopback TCP port nothing listens on now (bound to port 0 and released), for a helper
  /// program that needs its port on the command line.
  public static func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw Failure(what: "socket") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        Glibc.bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
      }
    }
    guard bound else { throw Failure(what: "bind port 0") }
    return Int(UInt16(bigEndian: address.sin_port))
  }

  /// Sends all of `bytes` (blocking); false if the connection is gone.
  @discardableResult
  public static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
    var sent = 0
    while sent < bytes.count {
      let n = bytes[sent...].withUnsafeBytes {
        Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
      }
      guard n > 0 else { return false }
      sent += n
    }
    return true
  }

  /// Completes a websocket handshake for `target` and reads nothing after the response head.
  public static func silentWebSocket(port: Int, target: String, receiveBuffer: Int32? = nil)
    throws -> Int32
  {
    let (fd, head) = try handshake(port: port, target: target, receiveBuffer: receiveBuffer)
    guard head.hasPrefix("HTTP/1.1 101") else {
      close(fd)
      throw Failure(what: "not upgraded: \(head)")
    }
    return fd
  }

  /// Sends a websocket handshake for `target` (with `headers`, e.g. `X-Forwarded-For: …`) and
  /// reads exactly the response head, a byte at a time, so no event bytes are consumed. The
  /// caller closes the socket.
  public static func handshake(
    port: Int, target: String, headers: [(String, String)] = [], receiveBuffer: Int32? = nil,
    source: String? = nil
  ) throws -> (fd: Int32, head: String) {
    let fd = try connect(port: port, receiveBuffer: receiveBuffer, source: source)
    let extra = headers.map { "\($0.0): \($0.1)\r\n" }.joined()
    let request =
      "GET \(target) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\(extra)\r\n"
    guard send(fd, Array(request.utf8)) else {
      close(fd)
      throw Failure(what: "send")
    }
    var head: [UInt8] = []
    var byte: UInt8 = 0
    while !head.suffix(4).elementsEqual(Array("\r\n\r\n".utf8)) {
      guard recv(fd, &byte, 1, 0) == 1 else {
        close(fd)
        throw Failure(what: "handshake")
      }
      head.append(byte)
    }
    return (fd, String(decoding: head, as: UTF8.self))
  }

  /// Reads (and keeps) what arrives until the peer closes or `timeout` passes. Returns the bytes
  /// and whether the end was seen (EOF or a reset). With `until`, stops as soon as the bytes so
  /// far satisfy it.
  public static func readToEnd(
    _ fd: Int32, timeout: Duration, until enough: ([UInt8]) -> Bool = { _ in false }
  ) -> (bytes: [UInt8], ended: Bool) {
    let deadline = ContinuousClock.now + timeout
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65_536)
    while !enough(bytes) {
      let left = deadline - ContinuousClock.now
      guard left > .zero else { return (bytes, false) }
      var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      let milliseconds =
        Int32(left.components.seconds * 1_000 + left.components.attoseconds / 1_000_000_000_000_000)
        + 1
      guard poll(&poller, 1, milliseconds) > 0 else { continue }
      let n = recv(fd, &chunk, chunk.count, 0)
      if n <= 0 { return (bytes, true) }
      bytes += chunk[..<n]
    }
    return (bytes, false)
  }

  /// True when the peer has closed the connection (EOF or a reset), reading and discarding
  /// whatever arrived before; false when it is still open. Does not wait.
  public static func isClosedByPeer(_ fd: Int32) -> Bool {
    var chunk = [UInt8](repeating: 0, count: 4_096)
    while true {
      let n = recv(fd, &chunk, chunk.count, Int32(MSG_DONTWAIT))
      if n > 0 { continue }
      return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)
    }
  }
}

/// Reads a socket on its own thread, counting and discarding the bytes, until the connection
/// ends: a subscriber that keeps up and allocates nothing per message.
public final class SocketDrain: Sendable {
  private let count = Atomic<Int>(0)
  private let done = Atomic<Bool>(false)

  public init(_ fd: Int32) {
    let thread = Thread { [self] in
      var chunk = [UInt8](repeating: 0, count: 65_536)
      while true {
        let n = recv(fd, &chunk, chunk.count, 0)
        if n <= 0 { break }
        count.add(n, ordering: .relaxed)
      }
      done.store(true, ordering: .relaxed)
    }
    thread.start()
  }

  /// Bytes read so far.
  public var bytes: Int { count.load(ordering: .relaxed) }
  /// The connection has ended.
  public var ended: Bool { done.load(ordering: .relaxed) }
}

/// The resident set size of this process, from /proc/self/statm.
public func residentBytes() -> Int {
  guard let file = fopen("/proc/self/statm", "r") else { return 0 }
  defer { fclose(file) }
  var line = [CChar](repeating: 0, count: 256)
  guard fgets(&line, Int32(line.count), file) != nil else { return 0 }
  let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  let fields = text.split(separator: " ")
  guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
  return pages * sysconf(Int32(_SC_PAGESIZE))
}
