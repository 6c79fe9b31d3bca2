"""The operators' command line: tenants, outbound numbers, agents, API credentials, webhook
endpoints, opt-outs, chats, events and the sweep.

python -m sms.admin --help
"""
