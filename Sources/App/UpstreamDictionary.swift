import Compression
import Foundation
import Ingest
import Logging

#if canImport(Glibc)
  import Glibc
#endif

/// An edge's zstd dictionary: its upstream's (`GET /dictionary`). An edge of a primary keeps a
/// copy in the data directory, so that restarted while the primary is unreachable it still
/// starts, serves the log it holds, and follows again once the primary answers (OPERATIONS §10).
enum UpstreamDictionary {
  /// The copy's file name in the data directory.
  static let fileName = "upstream.zdict"

  /// How long to ask the upstream before falling back to the saved copy; with no copy, before
  /// giving up.
  static let waitWithCopy = Duration.seconds(5)
  static let waitWithoutCopy = Duration.seconds(30)

  /// The upstream's dictionary. A primary's is saved for next time, and the saved copy is used
  /// when the primary cannot be reached (a warning says so). A Jetstream host's is never saved:
  /// one that has no `/dictionary` needs `--dictionary`, and the error says so.
  static func load(
    of upstream: RelayEndpoint, dataDirectory: String, caFile: String?, logger: Logger
  ) async throws -> ZstdDictionary {
    guard !upstream.isJetstream else {
      return try await fetch(
        upstream, caFile: caFile, logger: logger, waitingAtMost: waitWithoutCopy)
    }
    let path = dataDirectory + "/" + fileName
    let saved = savedCopy(path, logger: logger)
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

  /// The copy at `path`, if there is one that zstd can use; a copy that cannot be read or used
  /// is ignored with a warning (the primary's is fetched and saved over it).
  private static func savedCopy(_ path: String, logger: Logger) -> ZstdDictionary? {
    guard FileManager.default.fileExists(atPath: path) else { return nil }
    do {
      let dictionary = try ZstdDictionary(path: path)
      _ = try EventDecompressor(dictionary: dictionary)  // zstd digests it whole
      return dictionary
    } catch {
      logger.warning(
        "ignoring the saved copy of the primary's dictionary",
        metadata: ["path": "\(path)", "error": "\(error)"])
      return nil
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
        // Each attempt gets what is left of the wait (at most 10 s), so the wait is bounded even
        // by a host that never answers.
        let left = deadline - ContinuousClock.now
        let milliseconds = min(10_000, max(100, left.components.seconds * 1_000))
        let response = try await HTTPGet.fetch(
          host: upstream.host, port: upstream.port, path: "/dictionary", tls: tls,
          timeout: .milliseconds(milliseconds))
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
      guard deadline - ContinuousClock.now > .seconds(1) else { break }
      try await Task.sleep(for: .seconds(1))
    }
    throw ServeError(
      "cannot fetch the dictionary of the \(name) \(upstream) (GET /dictionary: \(problem))"
        + (upstream.isJetstream
          ? "; pass --dictionary with the dictionary its zstd frames use (Jetstream's "
            + "zstd_dictionary file)" : ""))
  }

  /// Writes `dictionary` to `path` whole or not at all: a synced temporary file renamed over it,
  /// then the directory synced. A failure leaves the old copy (if any) and no temporary file.
  private static func save(_ dictionary: ZstdDictionary, to path: String) throws {
    let temporary = path + ".tmp"
    do {
      let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
      guard fd >= 0 else { throw ServeError("cannot create \(temporary): \(lastError())") }
      let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
      try handle.write(contentsOf: dictionary.bytes)
      try handle.synchronize()
      try handle.close()
      guard rename(temporary, path) == 0 else {
        throw ServeError("cannot rename \(temporary): \(lastError())")
      }
    } catch {
      unlink(temporary)
      throw error
    }
    let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_CLOEXEC)
    if directory >= 0 {
      fsync(directory)
      close(directory)
    }
  }

  private static func lastError() -> String { String(cString: strerror(errno)) }
}
