"""Camera drivers: every camera gives a recordable main stream and a decodable detect stream."""
