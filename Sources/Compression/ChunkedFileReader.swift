#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Reads a file front to back in bounded chunks, decompressing it on the fly when it is a zstd
/// stream (detected by its magic). Memory stays bounded whatever the file's size: one read
/// chunk, plus the zstd decoder's state when compressed. Not thread-safe.
public final class ChunkedFileReader {
  public let path: String
  /// Whether the file is a zstd stream (its bytes are returned decompressed).
  public let isCompressed: Bool
  private let descriptor: Int32
  private let readSize: Int
  private let decoder: ZstdStream.Decoder?
  /// Bytes read from the file and not yet handed out (plain) or decoded (zstd).
  private let pending: UnsafeMutableRawBufferPointer
  private var pendingStart = 0
  private var pendingEnd = 0
  private var endOfFile = false

  /// `readSize` bounds each read from the file (tests make it tiny to split data everywhere).
  public init(path: String, readSize: Int = 256 << 10) throws {
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else { throw FileBytes.Failure.system(path, errno) }
    let readSize = max(readSize, 1)
    let pending = UnsafeMutableRawBufferPointer.allocate(
      byteCount: max(readSize, 4), alignment: 16)
    // Sniff the magic: read at least 4 bytes unless the file is shorter.
    var sniffed = 0
    var endOfFile = false
    var decoder: ZstdStream.Decoder? = nil
    do {
      while sniffed < 4 {
        let n = try Self.read(
          descriptor, pending.baseAddress! + sniffed, pending.count - sniffed, path)
        if n == 0 {
          endOfFile = true
          break
        }
        sniffed += n
      }
      if sniffed >= 4 && ZstdStream.isCompressed(UnsafeRawBufferPointer(pending)[..<4]) {
        decoder = try ZstdStream.Decoder()
      }
    } catch {
      pending.deallocate()
      close(descriptor)
      throw error
    }
    self.path = path
    self.descriptor = descriptor
    self.readSize = readSize
    self.pending = pending
    self.pendingEnd = sniffed
    self.endOfFile = endOfFile
    self.decoder = decoder
    self.isCompressed = decoder != nil
  }

  deinit {
    pending.deallocate()
    close(descriptor)
  }

  /// Fills the front of `buffer` with the next bytes (decompressed when the file is zstd) and
  /// returns how many; 0 only at the end. Throws for a read error, or a corrupt or truncated zstd
  /// stream. `buffer` must not be empty.
  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    precondition(buffer.count > 0)
    guard let decoder else {
      if pendingStart == pendingEnd {
        if endOfFile { return 0 }
        // Plain files are read straight into the caller's buffer.
        let n = try fill(buffer.baseAddress!, min(buffer.count, readSize))
        if n == 0 { endOfFile = true }
        return n
      }
      let n = min(buffer.count, pendingEnd - pendingStart)
      buffer.baseAddress!.copyMemory(from: pending.baseAddress! + pendingStart, byteCount: n)
      pendingStart += n
      return n
    }
    while true {
      if pendingStart == pendingEnd && !endOfFile {
        pendingStart = 0
        pendingEnd = try fill(pending.baseAddress!, readSize)
        if pendingEnd == 0 { endOfFile = true }
      }
      let input = UnsafeRawBufferPointer(
        start: pending.baseAddress! + pendingStart, count: pendingEnd - pendingStart)
      let (consumed, produced): (Int, Int)
      do {
        (consumed, produced) = try decoder.decode(input, into: buffer)
      } catch {
        throw FileBytes.Failure(description: "cannot read \(path): \(error)")
      }
      pendingStart += consumed
      if produced > 0 { return produced }
      if endOfFile && pendingStart == pendingEnd {
        if decoder.isInsideFrame {
          throw FileBytes.Failure(
            description:
              "cannot read \(path): zstd: truncated stream (the file ends inside a frame)")
        }
        return 0
      }
    }
  }

  /// One `read(2)` of up to `count` bytes, retried on interrupts.
  private static func read(
    _ descriptor: Int32, _ destination: UnsafeMutableRawPointer, _ count: Int, _ path: String
  ) throws -> Int {
    while true {
      let n = systemRead(descriptor, destination, count)
      if n >= 0 { return n }
      if errno != EINTR { throw FileBytes.Failure.system(path, errno) }
    }
  }

  private func fill(_ destination: UnsafeMutableRawPointer, _ count: Int) throws -> Int {
    try Self.read(descriptor, destination, count, path)
  }
}

private func systemRead(_ descriptor: Int32, _ destination: UnsafeMutableRawPointer, _ count: Int)
  -> Int
{
  read(descriptor, destination, count)
}
