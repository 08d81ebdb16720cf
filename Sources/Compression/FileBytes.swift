#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Reads whole files as bytes, with errors that name the file and the system's reason.
public enum FileBytes {
  public struct Failure: Error, CustomStringConvertible {
    public let description: String

    /// `cannot read PATH: ` and the system's text for the error number `code`.
    static func system(_ path: String, _ code: Int32) -> Failure {
      Failure(description: "cannot read \(path): \(String(cString: strerror(code)))")
    }
  }

  public static func read(_ path: String) throws -> [UInt8] {
    guard let file = fopen(path, "rb") else { throw Failure.system(path, errno) }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 20)
    while true {
      let n = fread(&chunk, 1, chunk.count, file)
      bytes.append(contentsOf: chunk[..<n])
      if n < chunk.count { break }
    }
    if ferror(file) != 0 { throw Failure.system(path, errno) }
    return bytes
  }
}
