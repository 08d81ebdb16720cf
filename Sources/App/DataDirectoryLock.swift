import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Creates the data directory if needed and holds an exclusive `flock` on `DIR/lock` while the
/// server runs, so two servers never share a log. The kernel drops the lock when the process
/// dies, even by SIGKILL: a restart never finds a stale lock.
final class DataDirectoryLock: Sendable {
  private let descriptor: Int32
  private let released = Atomic<Bool>(false)

  init(_ directory: String) throws {
    var path = ""
    for part in directory.split(separator: "/", omittingEmptySubsequences: false) {
      path += (path.isEmpty && !directory.hasPrefix("/") ? "" : "/") + part
      if path == "/" || part.isEmpty { continue }
      if mkdir(path, 0o755) != 0 && errno != EEXIST {
        throw ServeError(
          "cannot create the data directory \(path): \(String(cString: strerror(errno)))")
      }
    }
    descriptor = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw ServeError("cannot open \(directory)/lock: \(String(cString: strerror(errno)))")
    }
    guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
      close(descriptor)
      throw ServeError("another contrail is already using the data directory \(directory)")
    }
  }

  /// Lets go of the lock (once; also when deallocated).
  func release() {
    if !released.exchange(true, ordering: .relaxed) { close(descriptor) }
  }

  deinit { release() }
}
