import Compression
import Firehose
import SyntheticFirehose

#if canImport(Glibc)
  import Glibc
#endif

/// Locations of the shared test oracles (`../shared` beside the project root).
public enum SharedData {
  /// The project root, found from this file's path.
  public static let projectRoot: String = {
    var parts = "\(#filePath)".split(separator: "/", omittingEmptySubsequences: false)
    parts.removeLast(3)  // Tests/TestSupport/TestSupport.swift
    return parts.joined(separator: "/")
  }()

  /// The absolute path of `../shared/<relative>`, or nil when it is absent.
  public static func path(_ relative: String) -> String? {
    let path = projectRoot + "/../shared/" + relative
    return access(path, R_OK) == 0 ? path : nil
  }

  /// Contrail's own default dictionary (in the project, always present).
  public static let defaultDictionaryPath = projectRoot + "/Dictionaries/contrail-default.zdict"

  public static let skipMessage =
    "../shared is absent: the shared conformance data (capture, dictionaries) is needed for this test"

  /// The contents of a file as bytes, or nil when it cannot be read.
  public static func read(_ path: String) -> [UInt8]? {
    try? FileBytes.read(path)
  }
}

/// Converts an encoded record block with a fresh converter; nil when the record is rejected.
public func recordJSON(bytes: [UInt8]) -> String? {
  var converter = RecordConverter()
  var out = ByteSink()
  defer {
    converter.release()
    out.release()
  }
  let ok = bytes.withUnsafeBytes { converter.write($0, to: &out) }
  return ok ? String(decoding: out.bytes, as: UTF8.self) : nil
}

/// Converts a record value (canonically encoded).
public func recordJSON(_ value: CBORValue) -> String? {
  recordJSON(bytes: value.encoded)
}

/// A tag-42 link value for binary CID bytes.
public func sha256Empty() -> [UInt8] { SHA256.hash([]) }
