#!/usr/bin/env bash
# macOS: build "Desktop App.app" with PyInstaller (BUNDLE in the spec, Info.plist from packaging/macos/),
# then a compressed .dmg with the app and a link to /Applications. Run from anywhere on a Mac:
#     packaging/macos/build_macos.sh            # dist/Desktop App.app and dist/desktop-app-VERSION-macos.dmg
# The app is not signed or notarised: first open it with right-click > Open (or sign it with your own identity:
# codesign --deep --force --options runtime --sign "Developer ID Application: ..." "dist/Desktop App.app").
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-.venv/bin/python}"
VERSION="$("$PY" -c 'import desktop_app; print(desktop_app.__version__)')"
APP="dist/Desktop App.app"
DMG="dist/desktop-app-${VERSION}-macos-$(uname -m).dmg"

"$PY" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
  packaging/pyinstaller/desktop_app.spec
test -d "$APP" || { echo "build_macos: $APP was not made" >&2; exit 1; }
plutil -lint "$APP/Contents/Info.plist"

# the .dmg: the app and an /Applications link in a folder, compressed (UDZO)
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
rm -f "$DMG"
hdiutil create -volname "Desktop App" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov "$DMG"
echo "wrote $APP and $DMG"
