"""Events (SPEC 10.7): what changed, recorded in the commit that changed it, and delivered to
the tenant's webhook endpoints."""
