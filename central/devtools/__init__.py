"""Development and test helpers of the central service (a throwaway PostgreSQL, the demo)."""
