/// Damage the log found in a segment when it was opened: a byte range that holds no readable
/// record, what was done with it, and what that costs (`EventLog.recoveryReport`).
public struct RecoveryNote: Sendable, Equatable, CustomStringConvertible {
  /// Where the range lies, and so what was done with it.
  public enum Kind: Sendable, Equatable {
    /// Corrupt bytes between two whole records: left in the file and skipped by readers; the
    /// records after them are kept, the events in them are lost.
    case corruptRange
    /// Bytes after the last whole record of a sealed segment (it was truncated or damaged):
    /// left in the file, never read; the events in them are lost.
    case damagedTail
    /// Bytes after the last whole record of the newest segment (a torn write, or a corrupt last
    /// record), cut so appends follow that record; ingest resumes after it, so the relay sends
    /// their events again if it still has them.
    case cutTail
  }

  public let kind: Kind
  /// The segment's file name (in `<data directory>/segments`).
  public let segment: String
  /// Where the range starts in the file.
  public let offset: Int
  /// Its length.
  public let bytes: Int

  public init(kind: Kind, segment: String, offset: Int, bytes: Int) {
    self.kind = kind
    self.segment = segment
    self.offset = offset
    self.bytes = bytes
  }

  public var description: String {
    switch kind {
    case .corruptRange:
      return
        "\(segment): skipped \(bytes) corrupt bytes at offset \(offset); the records after them "
        + "are kept, the events in them are lost"
    case .damagedTail:
      return
        "\(segment): \(bytes) bytes at offset \(offset), after the last whole record of a sealed "
        + "segment, are not a whole record (truncated or damaged); the events in them are lost"
    case .cutTail:
      return
        "\(segment): cut \(bytes) bytes at offset \(offset), after the last whole record of the "
        + "newest segment (a torn write or a corrupt last record); ingest resumes after that record"
    }
  }
}
