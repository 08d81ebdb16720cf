import EventLog
import FuzzSupport

/// Target: an edge's replication messages (`ReplicationMessage.decode`), as a hostile or broken
/// primary could send them. Every message that decodes must encode back to the same bytes.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
  let input = fuzzInput(start, count)
  guard let record = try? ReplicationMessage.decode(input) else { return 0 }
  let encoded = ReplicationMessage.encode(record)
  let again = encoded.withUnsafeBytes { try? ReplicationMessage.decode($0) }
  guard again == record else {
    fuzzFailure("a decoded message does not survive encode/decode", input)
  }
  return 0
}
