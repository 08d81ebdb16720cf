import Broadcast
import EventLog
import Foundation
import Server
import TestSupport
import XCTest

#if canImport(Glibc)
  import Glibc
#endif

/// Which client a request behind a trusted reverse proxy comes from.
final class ReverseProxyTests: XCTestCase {
  func testForwardedAddressResolution() throws {
    let proxies = try XCTUnwrap(TrustedProxies("10.0.0.0/8,::1"))
    func client(_ peer: String, _ headers: [(String, String)]) -> String {
      proxies.client(peer: peer, headers: .init(headers))
    }
    XCTAssertEqual(client("192.0.2.1", [("X-Forwarded-For", "1.2.3.4")]), "192.0.2.1")
    XCTAssertEqual(client("10.1.1.1", [("X-Forwarded-For", "1.2.3.4")]), "1.2.3.4")
    // Right-most untrusted: a client-supplied left part is not believed.
    XCTAssertEqual(
      client("10.1.1.1", [("X-Forwarded-For", "6.6.6.6, 1.2.3.4, 10.9.9.9")]), "1.2.3.4")
    XCTAssertEqual(
      client("10.1.1.1", [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4")]),
      "1.2.3.4")
    XCTAssertEqual(client("::1", [("X-Real-IP", "1.2.3.4")]), "1.2.3.4")
    XCTAssertEqual(client("10.1.1.1", [("X-Forwarded-For", "garbage")]), "10.1.1.1")
    XCTAssertEqual(client("::ffff:10.0.0.5", [("X-Forwarded-For", "2001:DB8::1")]), "2001:db8::1")
    XCTAssertNil(TrustedProxies("10.0.0.0/33"))
    XCTAssertNil(TrustedProxies("nonsense"))
  }
}
