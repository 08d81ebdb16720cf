import NIOHTTP1

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The reverse proxies (`--trusted-proxies CIDR,…`) whose forwarding headers are believed: for a
/// connection from one of them, the client is the right-most address in `X-Forwarded-For` that is
/// not itself a trusted proxy (else `X-Real-IP`). Per-address limits, pacing and logs then use it.
/// Anyone else's headers are ignored: a client cannot choose its own address.
public struct TrustedProxies: Sendable, Equatable {
  /// One network: an address and a prefix length.
  public struct Network: Sendable, Equatable, CustomStringConvertible {
    let bytes: [UInt8]  // 4 or 16
    let prefix: Int

    /// `10.0.0.0/8`, `::1/128`, or a bare address (all its bits).
    public init?(_ text: Substring) {
      let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
      guard let address = TrustedProxies.parse(String(parts[0])) else { return nil }
      let bits = address.count * 8
      if parts.count == 2 {
        guard let prefix = Int(parts[1]), (0...bits).contains(prefix) else { return nil }
        self.prefix = prefix
      } else {
        prefix = bits
      }
      bytes = address
    }

    func contains(_ address: [UInt8]) -> Bool {
      guard address.count == bytes.count else { return false }
      var remaining = prefix
      for (a, b) in zip(address, bytes) where remaining > 0 {
        let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
        if a & mask != b & mask { return false }
        remaining -= 8
      }
      return true
    }

    public var description: String {
      "\(TrustedProxies.format(bytes))/\(prefix)"
    }
  }

  public let networks: [Network]

  public static let none = TrustedProxies(networks: [])

  public init(networks: [Network]) { self.networks = networks }

  /// `CIDR[,CIDR…]`; nil when any part is not a network.
  public init?(_ text: String) {
    var networks: [Network] = []
    for part in text.split(separator: ",") {
      guard let network = Network(part.trimmingSpaces) else { return nil }
      networks.append(network)
    }
    guard !networks.isEmpty else { return nil }
    self.networks = networks
  }

  public func isTrusted(_ address: String) -> Bool {
    guard !networks.isEmpty, let bytes = Self.parse(address) else { return false }
    return networks.contains { $0.contains(bytes) }
  }

  /// The client's address for a request that came from `peer`.
  public func client(peer: String, headers: HTTPHeaders) -> String {
    guard isTrusted(peer) else { return peer }
    let forwarded = headers["X-Forwarded-For"].flatMap { $0.split(separator: ",") }
      .map { String($0.trimmingSpaces) }
    var leftmost: String? = nil
    for hop in forwarded.reversed() {
      guard let bytes = Self.parse(hop) else { break }  // a malformed hop: trust nothing left of it
      let canonical = Self.format(bytes)
      if !networks.contains(where: { $0.contains(bytes) }) { return canonical }
      leftmost = canonical
    }
    if let realIP = headers.first(name: "X-Real-IP").flatMap({
      Self.parse(String(Substring($0).trimmingSpaces))
    }) {
      return Self.format(realIP)
    }
    return leftmost ?? peer
  }

  /// The bytes of an IPv4 or IPv6 address (an IPv4-mapped IPv6 address counts as IPv4).
  static func parse(_ text: String) -> [UInt8]? {
    var v4 = in_addr()
    if inet_pton(AF_INET, text, &v4) == 1 {
      return withUnsafeBytes(of: &v4) { Array($0) }
    }
    var v6 = in6_addr()
    guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
    let bytes = withUnsafeBytes(of: &v6) { Array($0) }
    if bytes.prefix(10).allSatisfy({ $0 == 0 }) && bytes[10] == 0xFF && bytes[11] == 0xFF {
      return Array(bytes.suffix(4))
    }
    return bytes
  }

  static func format(_ bytes: [UInt8]) -> String {
    var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
    let family = bytes.count == 4 ? AF_INET : AF_INET6
    _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &text, socklen_t(text.count)) }
    return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

extension Substring {
  fileprivate var trimmingSpaces: Substring {
    var text = self
    while let first = text.first, first == " " || first == "\t" { text = text.dropFirst() }
    while let last = text.last, last == " " || last == "\t" { text = text.dropLast() }
    return text
  }
}
