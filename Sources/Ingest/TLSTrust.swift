import Foundation
import NIOCore
import NIOSSL

/// The TLS client set-up of every outgoing connection (relay, `tail`, dictionary fetch): which
/// certificates to trust, and errors in words a person can act on.
public enum TLSTrust {
  /// Trusts the PEM certificates in `caFile`, else those in `$SSL_CERT_FILE`, else the system's.
  public static func clientContext(caFile: String? = nil) throws -> NIOSSLContext {
    var configuration = TLSConfiguration.makeClientConfiguration()
    let environment = ProcessInfo.processInfo.environment["SSL_CERT_FILE"]
    if let path = caFile ?? environment.flatMap({ $0.isEmpty ? nil : $0 }) {
      do {
        configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(path))
      } catch {
        throw Failure(description: "cannot read CA certificates from \(path)")
      }
    }
    return try NIOSSLContext(configuration: configuration)
  }

  /// One line for a failed connection to `host:port`, naming the TLS problem when there is one.
  public static func explain(_ error: Error, host: String, port: Int) -> String {
    let text = "\(error)"
    if error is NIOSSLError || text.contains("CERTIFICATE_VERIFY_FAILED")
      || text.contains("BoringSSL") || text.contains("handshake")
    {
      let reason =
        text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("certificate")
        ? "its certificate is not trusted (pass --ca FILE or set SSL_CERT_FILE for a private CA)"
        : text.contains("WRONG_VERSION_NUMBER") || text.contains("wrong version")
          ? "it does not speak TLS (use ws:// or http:// for a plain server)"
          : "the TLS handshake failed"
      return "cannot connect to \(host):\(port): \(reason)"
    }
    if let io = error as? IOError {
      return "cannot connect to \(host):\(port): \(io.description)"
    }
    return "cannot connect to \(host):\(port): \(text)"
  }

  public struct Failure: Error, CustomStringConvertible {
    public let description: String
  }
}
