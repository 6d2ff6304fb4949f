"""Network databases: the shipped hosting/VPN/crawler range lists, their .mmdb builder, and readers."""
