import CZstd

/// A formatted zstd dictionary (magic `37 A4 30 EC`, entropy tables, content) and its ID, which
/// every frame compressed with it carries. Raw-content dictionaries are refused: they have no ID.
public struct ZstdDictionary: Sendable, Equatable {
  public let bytes: [UInt8]
  public let id: UInt32

  public struct Invalid: Error, CustomStringConvertible {
    public let description: String
  }

  public static let magic: [UInt8] = [0x37, 0xA4, 0x30, 0xEC]

  public init(bytes: [UInt8]) throws {
    guard bytes.starts(with: Self.magic) else {
      throw Invalid(
        description: "not a formatted zstd dictionary (no 37 A4 30 EC magic); raw-content "
          + "dictionaries carry no ID and are not supported")
    }
    let id = bytes.withUnsafeBytes { ZDICT_getDictID($0.baseAddress, $0.count) }
    guard id != 0 else {
      throw Invalid(description: "the dictionary's ID is 0; frames could not name it")
    }
    self.bytes = bytes
    self.id = id
  }

  /// Loads a dictionary file.
  public init(path: String) throws {
    let bytes: [UInt8]
    do {
      bytes = try FileBytes.read(path)
    } catch {
      throw Invalid(description: "\(error)")
    }
    do {
      try self.init(bytes: bytes)
    } catch let invalid as Invalid {
      throw Invalid(description: "\(path): \(invalid.description)")
    }
  }
}
