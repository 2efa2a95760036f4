"""AWS: sessions and assume-role, regions, the collector registry and its generic collectors."""
