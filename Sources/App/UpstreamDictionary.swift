import Compression
import Foundation
import Ingest
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// An edge's zstd dictionary: its upstream's (`GET /dictionary`), with a copy kept in the data
/// directory so that an edge restarted while its upstream is unreachable still starts, serves
/// the log it holds, and follows again once the upstream answers (OPERATIONS §10).
enum UpstreamDictionary {
  /// The copy's file name in the data directory.
  static let fileName = "upstream.zdict"

  /// How long to ask the upstream before falling back to the saved copy; with no copy, before
  /// giving up.
  static let waitWithCopy = Duration.seconds(5)
  static let waitWithoutCopy = Duration.seconds(30)

  /// The upstream's dictionary, saved for next time; the saved copy when the upstream cannot be
  /// reached (a warning says so); an error when neither is there.
  static func load(
    of upstream: RelayEndpoint, dataDirectory: String, caFile: String?, logger: Logger
  ) async throws -> ZstdDictionary {
    let path = dataDirectory + "/" + fileName
    let saved = FileManager.default.fileExists(atPath: path) ? try? ZstdDictionary(path: path) : nil
    do {
      let fetched = try await fetch(
        upstream, caFile: caFile, logger: logger,
        waitingAtMost: saved == nil ? waitWithoutCopy : waitWithCopy)
      if fetched != saved {
        do {
          try save(fetched, to: path)
        } catch {
          logger.warning(
            "cannot save the \(upstream.upstreamName)'s dictionary in the data directory",
            metadata: ["path": "\(path)", "error": "\(error)"])
        }
      }
      return fetched
    } catch {
      guard let saved else { throw error }
      logger.warning(
        """
        the \(upstream.upstreamName) is unreachable: serving the log with the dictionary saved \
        when it last answered; following resumes when it does
        """,
        metadata: [
          "upstream": "\(upstream)", "path": "\(path)", "id": "\(saved.id)", "error": "\(error)",
        ])
      return saved
    }
  }

  /// `GET /dictionary`, asked for until it answers or `limit` passes: an edge serves exactly the
  /// frames its upstream compressed. A 404 from a Jetstream host ends the wait at once: a public
  /// Jetstream has no `/dictionary`, and --dictionary must name its dictionary.
  private static func fetch(
    _ upstream: RelayEndpoint, caFile: String?, logger: Logger, waitingAtMost limit: Duration
  ) async throws -> ZstdDictionary {
    let name = upstream.upstreamName
    let deadline = ContinuousClock.now + limit
    var problem = ""
    while ContinuousClock.now < deadline {
      do {
        let tls = upstream.tls ? try TLSTrust.clientContext(caFile: caFile) : nil
        let response = try await HTTPGet.fetch(
          host: upstream.host, port: upstream.port, path: "/dictionary", tls: tls)
        if response.status == 200 { return try ZstdDictionary(bytes: response.body) }
        problem = "HTTP \(response.status)"
        // A public Jetstream has none; a primary's 404 may be a proxy mid-deploy.
        if response.status == 404 && upstream.isJetstream { break }
      } catch {
        problem = "\(error)"
      }
      logger.warning(
        "cannot fetch the \(name)'s dictionary yet",
        metadata: ["upstream": "\(upstream)", "error": "\(problem)"])
      try await Task.sleep(for: .seconds(1))
    }
    throw ServeError(
      "cannot fetch the dictionary of the \(name) \(upstream) (GET /dictionary: \(problem))"
        + (upstream.isJetstream
          ? "; pass --dictionary with the dictionary its zstd frames use (Jetstream's "
            + "zstd_dictionary file)" : ""))
  }

  /// Writes `dictionary` to `path` whole or not at all: a synced temporary file renamed over it.
  private static func save(_ dictionary: ZstdDictionary, to path: String) throws {
    let temporary = path + ".tmp"
    guard FileManager.default.createFile(atPath: temporary, contents: nil) else {
      throw ServeError("cannot create \(temporary)")
    }
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
    defer { try? handle.close() }
    try handle.write(contentsOf: dictionary.bytes)
    try handle.synchronize()
    guard rename(temporary, path) == 0 else {
      throw ServeError("cannot rename \(temporary): \(String(cString: strerror(errno)))")
    }
  }
}
