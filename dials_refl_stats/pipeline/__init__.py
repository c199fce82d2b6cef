"""The pipeline every program shares: arguments -> inputs -> selection -> statistic
partials -> merge -> finalize -> outputs."""
