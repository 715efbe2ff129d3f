"""HTTP routes of the BFF, one module per area of the API."""
