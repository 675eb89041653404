import Foundation
import StatusCodes
import SwiftProtobuf
import SystemCalls
import TTRPC

/// The Swift twin of the Go peer's test service, so each side can be checked against the other.
enum EchoService {
    static let name = "cocoon.test.Echo"

    static func make() -> TTRPCService {
        var s = TTRPCService(name)
        s.unary("Echo") { (_, r: Google_Protobuf_StringValue) in r }
        s.unary("Fail") { (_, r: Google_Protobuf_Int32Value) -> Google_Protobuf_Empty in
            throw TTRPCError(StatusCode(rawValue: r.value) ?? .unknown, "failed as asked with code \(r.value)")
        }
        s.unary("Sleep") { (context, r: Google_Protobuf_Int64Value) -> Google_Protobuf_Int64Value in
            let until = Deadline.after(seconds: Double(r.value) / 1000)
            let cut = context.deadline.map { $0 < until } ?? false
            SystemCalls.sleep(seconds: (cut ? context.deadline! : until).remainingSeconds)
            if cut { throw TTRPCError(.deadlineExceeded, "sleep cut short by the caller's deadline") }
            return r
        }
        s.unary("Metadata") { (context, _: Google_Protobuf_Empty) -> Google_Protobuf_StringValue in
            let pairs = context.metadata.flatMap { key, values in values.map { "\(key)=\($0)" } }.sorted()
            return .with { $0.value = "\(pairs.joined(separator: ",")) deadline=\(context.deadline != nil)" }
        }
        s.unary("Big") { (_, r: Google_Protobuf_Int64Value) -> Google_Protobuf_BytesValue in
            .with { $0.value = Data(count: Int(r.value)) }
        }
        return s
    }
}
