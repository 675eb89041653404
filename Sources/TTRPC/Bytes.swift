#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// Generated messages carry `bytes` fields as Data; the rest of cocoon works in [UInt8].
extension Data {
    var bytes: [UInt8] { [UInt8](self) }
}

extension Array where Element == UInt8 {
    var data: Data { Data(self) }
}
