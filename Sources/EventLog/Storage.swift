#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

extension EventLog {
  /// The system calls the writer makes for data: every record and segment header is written with
  /// `write` and every segment (and new-segment directory entry) made durable with `sync`.
  /// `.system` is the real disk; tests inject a slow or failing one (an EIO from fsync, an ENOSPC
  /// from write) without root. Failures are returned as errno values, never read from `errno`.
  public struct Storage: Sendable {
    /// `write(2)`: writes up to `count` bytes from `bytes` to `fd`; returns how many it wrote, or
    /// `-errno` when it fails (`-EINTR` is retried).
    public var write: @Sendable (_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int
    /// `fdatasync(2)` of `fd` (a segment file, or the segments directory after a roll): 0, or the
    /// `errno` of the failure (`EINTR` is retried).
    public var sync: @Sendable (_ fd: Int32) -> Int32
    /// `ftruncate(2)` of `fd` to `length` after a failed write: 0, or the `errno` of the failure.
    public var truncate: @Sendable (_ fd: Int32, _ length: Int) -> Int32

    public init(
      write: @escaping @Sendable (_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int,
      sync: @escaping @Sendable (_ fd: Int32) -> Int32,
      truncate: @escaping @Sendable (_ fd: Int32, _ length: Int) -> Int32 = { fd, length in
        ftruncate(fd, off_t(length)) == 0 ? 0 : errno
      }
    ) {
      self.write = write
      self.sync = sync
      self.truncate = truncate
    }

    /// The real `write(2)` and `fdatasync(2)`.
    public static let system = Storage(
      write: { fd, bytes, count in
        let written = systemWrite(fd, bytes, count)
        return written < 0 ? -Int(errno) : written
      },
      sync: { fd in systemSync(fd) == 0 ? 0 : errno })
  }
}

private func systemWrite(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
  write(fd, bytes, count)
}

private func systemSync(_ fd: Int32) -> Int32 {
  #if canImport(Darwin)
    fsync(fd)
  #else
    fdatasync(fd)
  #endif
}

/// An open descriptor, closed when the last holder lets go: the writer holds its segment's, and a
/// sync holds every one it is syncing, so a roll or `close()` never closes a descriptor under a
/// sync in progress (and a retired segment's descriptor closes once it has been synced).
final class OpenFile: Sendable {
  let fd: Int32
  let path: String

  init(fd: Int32, path: String) {
    self.fd = fd
    self.path = path
  }

  deinit { closeFile(fd) }
}
