import Foundation
import XCTest

extension XCTestCase {
  /// A new file under the system's temporary directory holding `bytes`, its name ending in
  /// `suffix`; removed when the test ends (removing it sooner is fine).
  public func temporaryFile(holding bytes: [UInt8], suffix: String = "") throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent(
      "contrail-\(UUID())\(suffix)"
    ).path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
  }
}
