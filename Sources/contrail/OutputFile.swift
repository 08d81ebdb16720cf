#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A buffered output stream: a file, or standard output when no path is given.
final class OutputFile {
  private let handle: UnsafeMutablePointer<FILE>
  private let ownsHandle: Bool

  init(path: String?) throws {
    if let path {
      guard let file = fopen(path, "wb") else {
        throw CLIError("cannot open \(path) for writing: \(String(cString: strerror(errno)))")
      }
      handle = file
      ownsHandle = true
    } else {
      guard let file = fdopen(STDOUT_FILENO, "wb") else {
        throw CLIError("cannot write to standard output")
      }
      handle = file
      ownsHandle = false
    }
  }

  func write(_ bytes: UnsafeRawBufferPointer) throws {
    guard bytes.count > 0 else { return }
    if fwrite(bytes.baseAddress, 1, bytes.count, handle) != bytes.count {
      throw CLIError("write failed: \(String(cString: strerror(errno)))")
    }
  }

  func write(_ bytes: [UInt8]) throws {
    try bytes.withUnsafeBytes { try write($0) }
  }

  func close() throws {
    let failed = ownsHandle ? fclose(handle) != 0 : fflush(handle) != 0
    if failed { throw CLIError("closing output failed: \(String(cString: strerror(errno)))") }
  }
}

/// An error the CLI reports as one line.
struct CLIError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// Writes one line to standard error.
func printError(_ line: String) {
  let text = Array((line + "\n").utf8)
  _ = text.withUnsafeBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

func fileExists(_ path: String) -> Bool {
  access(path, F_OK) == 0
}
