"""The operators' command line: tenants, outbound numbers, agents and API credentials.

python -m sms.admin --help
"""
