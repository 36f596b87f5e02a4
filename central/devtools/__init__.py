"""Development and test helpers of the Command Center: the fleet simulator (`fleet_sim`,
`fleet`), a throwaway PostgreSQL, the console's browser for tests."""
