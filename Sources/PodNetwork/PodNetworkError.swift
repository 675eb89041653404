import StatusCodes

/// Why a pod's network could not be carried into its VM.
public struct PodNetworkError: CocoonError {
    public let code: StatusCode
    public let message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }
}
