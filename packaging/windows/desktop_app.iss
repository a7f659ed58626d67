; Inno Setup script: a per-user installer (no admin rights) for the PyInstaller bundle in dist\desktop-app.
; Build on Windows after the bundle (see .github/workflows/installers.yml):
;     .venv\Scripts\pyinstaller --noconfirm --distpath dist --workpath build\pyinstaller packaging\pyinstaller\desktop_app.spec
;     iscc /DAppVersion=0.1.0 packaging\windows\desktop_app.iss
; Output: dist\desktop-app-VERSION-windows-setup.exe. Paths below are relative to this file's folder.

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#define AppName "Desktop App"
#define AppExeName "desktop-app-gui.exe"
#define BundleDir "..\..\dist\desktop-app"

[Setup]
AppId={{6F1C2A9E-4B7D-4E1A-9C3B-2D5E8F7A1B40}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=desktop-app developers
DefaultDirName={localappdata}\Programs\desktop-app
DefaultGroupName={#AppName}
DisableProgramGroupPage=yes
; per user, no UAC prompt; the user may still choose "all users" if they have admin rights
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=desktop-app-{#AppVersion}-windows-setup
SetupIconFile=..\..\resources\icons\desktop-app.ico
UninstallDisplayIcon={app}\{#AppExeName}
LicenseFile=..\..\LICENSE
; the bundle is gigabytes of already-compressed libraries: fast LZMA2 keeps the build short
Compression=lzma2/fast
SolidCompression=no
WizardStyle=modern

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\{#AppExeName}"; IconFilename: "{app}\{#AppExeName}"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\{#AppExeName}"; Tasks: desktopicon

[Run]
Filename: "{app}\{#AppExeName}"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; Python bytecode caches written next to the bundle at run time; the user's images and settings stay
Type: filesandordirs; Name: "{app}\_internal\__pycache__"
