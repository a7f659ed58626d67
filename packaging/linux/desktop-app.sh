#!/bin/sh
# /usr/bin/desktop-app: the installed bundle in /opt/desktop-app, with the command line unchanged.
exec /opt/desktop-app/desktop-app "$@"
